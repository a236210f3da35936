"""
Benchmarks: one load generator that measures chatsvc and its peers (IRC
servers) on the same machine in the same session.  See README.md.
"""
