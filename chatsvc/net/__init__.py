"""
What every chatsvc line service shares, whatever it serves: framing with
a length limit (L{framing}), decoding and making text harmless
(L{text}), the line protocol and its factory with limits, reply order,
half-close, back-pressure and connection caps (L{lineproto}), batched
output and the fan-out backlog (L{output}), token buckets
(L{ratelimit}), listening on endpoint descriptions with one-line
start-up errors (L{listening}), the options every service takes
(L{options}), and the few private Twisted attributes read, guarded
(L{twistedcompat}).
"""
