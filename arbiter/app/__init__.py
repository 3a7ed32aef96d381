"""Running the server: the twistd plugin's tap, assembling service, factory and site."""
