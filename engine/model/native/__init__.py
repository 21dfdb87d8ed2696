"""The native decode kernel (C, loaded with ctypes): the TorchScript decode step fused into one call."""
