"""Start and stop the local servers of the pipeline's dev stack and test suite."""
