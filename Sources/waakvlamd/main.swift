print("waakvlamd: not yet built")
