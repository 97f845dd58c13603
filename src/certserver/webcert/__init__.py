"""The management server's browser-facing ("client") certificate.

``material`` reads what an operator gives (any form the tolerant reader takes), ``check``
reports everything wrong with it, ``selfsigned`` makes the fresh default, and ``install``
wires a checked set into Tomcat's server.xml (``tomcat``) or nginx, with ``keystore`` for
Java's PKCS#12 files.
"""
