// Placeholder: WaakvlamRelay is built in its own issue.
