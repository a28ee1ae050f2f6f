// unit tests of the fold come later
