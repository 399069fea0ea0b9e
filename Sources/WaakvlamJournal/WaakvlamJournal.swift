// Placeholder: WaakvlamJournal is built in its own issue.
