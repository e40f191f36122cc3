"""The fax engine: sessions over spandsp, page images, the test-fax sender."""
