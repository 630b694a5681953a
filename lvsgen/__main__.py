from lvsgen.cli import main

main()
