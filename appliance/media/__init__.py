"""Media: RTP for G.711 pass-through (UDPTL for T.38 comes next)."""
