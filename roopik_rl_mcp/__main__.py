from roopik_rl_mcp.cli import main

raise SystemExit(main())
