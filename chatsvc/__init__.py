"""
chatsvc: Twisted line services.

A timestamp echo (``twistd tsserv``), a command service
(``twistd cmdserv``), a multi-room chat (``twistd chat``) and a stdio
client (``chatsvc-client``).
"""

__version__ = "0.1.0"
