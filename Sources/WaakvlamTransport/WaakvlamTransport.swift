// Placeholder: WaakvlamTransport is built in its own issue.
