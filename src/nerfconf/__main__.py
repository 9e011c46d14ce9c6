from nerfconf.cli import main

raise SystemExit(main())
