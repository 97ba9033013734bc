from varctl.cli import main

main()
