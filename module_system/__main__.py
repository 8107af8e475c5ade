from module_system.cli import main

main()
