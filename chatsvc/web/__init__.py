"""
The web gateway: a chat page in the browser, on the chat's rooms.

C{twistd chat --web PORT} serves the page (L{chatsvc.web.site}: the page
and its static files, nothing fetched from anywhere else) and, at C{/ws},
the chat over a WebSocket (L{chatsvc.web.socket}): a browser is a line
client in JSON mode, one text message per line each way, through the
same L{ChatSession<chatsvc.chat.session.ChatSession>} as the line
protocol.

Imported only when C{--web} is given.
"""
