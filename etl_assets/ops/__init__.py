"""Operating a deployment: the commands and checks that keep its runs going."""
