from .coordinator import main

main()
