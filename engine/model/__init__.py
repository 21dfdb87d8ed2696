"""The torch runtime: load a TorchScript model, its KV-cached session, the native decode kernel, the
grammar masks and the sampler. Never imports training code."""
