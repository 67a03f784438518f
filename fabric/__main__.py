from fabric.cli import main

raise SystemExit(main())
