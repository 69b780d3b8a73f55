from lrdecay_cli.cli import main

main()
