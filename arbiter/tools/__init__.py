"""Tools that drive a server from outside: the load tester, lockstep bots, the fuzzer."""
