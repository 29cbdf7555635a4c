from assetd.cli import main

main()
