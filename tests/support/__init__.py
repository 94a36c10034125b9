"""What the tests share: micrographs and models they make, the one way they run the
command line and the workflow, the real consumers of our exports, and reference
implementations to compare against."""
