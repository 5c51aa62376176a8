from tollway.cli import main

main()
