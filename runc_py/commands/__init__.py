"""One module per runc command: its flags (`FLAGS`), usage line (`USAGE`) and `run()`."""
