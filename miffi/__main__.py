from miffi.cli import main

raise SystemExit(main())
