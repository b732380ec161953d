from mlcbench.cli import main

raise SystemExit(main())
