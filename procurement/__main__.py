from procurement.cli import main

raise SystemExit(main())
