"""The asset mapping file: its schema, its checks, reading it, and the placeholders of topic templates."""
