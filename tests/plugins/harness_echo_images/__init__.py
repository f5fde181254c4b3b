"""A toy protocol, "echo-images", added to the harness by an entry point alone (see docs/protocols.md).

Found by ``importlib.metadata`` when ``tests/plugins`` is on ``sys.path`` (its ``*.dist-info`` folder
declares the entry points), so the tests need no ``pip install``. ``echo-images`` registers a full spec
(adapter, sandbox server, default profile); ``echo-images-direct`` registers the adapter class alone, the
older form, which the sandbox does not serve.
"""
