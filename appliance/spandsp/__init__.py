"""spandsp 0.0.6 binding: the only place that knows its C signatures."""
