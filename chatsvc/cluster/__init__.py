"""
Many chat processes as one network, through Redis (C{twistd chat
--redis URL}): L{node} is a process's link and bus, L{replica} its copy
of the shared state, L{scripts} the operations Redis runs atomically.
Imported only when C{--redis} is given: a single server needs none of it.
"""
