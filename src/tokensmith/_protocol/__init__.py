"""The sans-IO protocol core: builds requests and interprets responses, never touches a socket or a clock.

Everything here is a pure function of its inputs (time is passed in), so every rule of the RFCs is testable
without a server and the same core serves the compat functions, ``TokenClient`` and async drivers.
"""
