"""Labelling and curation in the browser (``miffi label``, ``miffi curate``).

:mod:`~miffi.review.decisions` keeps the user's decisions (labels, overrides) in files
rewritten atomically on every change; :mod:`~miffi.review.order` decides which micrograph
comes next; :mod:`~miffi.review.session` joins a dataset or a run's results with its
tensor cache and the decision files; :mod:`~miffi.review.server` serves it all to a
browser page on 127.0.0.1, behind a token.
"""

#: Which micrograph comes next (:mod:`miffi.review.order`); here, light, for the parser.
ORDERS = ("acquisition", "category", "uncertain")
