"""Server database backends of the store, imported only when a store URL names one (their drivers are optional
extras: ``pip install 'harness[postgres]'``)."""
