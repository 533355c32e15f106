"""Label sets into constraints, and the engines that score them: ``labelset`` and ``trie`` are values, ``base`` the
Engine protocol, ``engines`` the registry, ``local`` and ``vllm`` one module per engine, ``scoring`` the tree-mask
forward, ``decisions`` the shared decision rule, ``tokens`` the shared prompt wrapping, ``errors`` the exception
kinds every layer uses."""
