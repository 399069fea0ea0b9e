// Placeholder: WaakvlamCore is built in its own issue.
