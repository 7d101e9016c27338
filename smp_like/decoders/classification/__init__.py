"""Classification model (Flemme's ClM): encoder + global pooling + MLP head."""
