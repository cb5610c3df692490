from fermion.cli import main

main()
