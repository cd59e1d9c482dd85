"""Speed and memory of rnnlab's recurrent layers against their peers (``make bench``)."""
