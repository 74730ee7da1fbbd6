from clinfo.cli import main

main()
