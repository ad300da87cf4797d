"""Who may change what: signed requests and attribute-based authorisation."""
