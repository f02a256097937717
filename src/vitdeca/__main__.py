from vitdeca.cli import main

raise SystemExit(main())
