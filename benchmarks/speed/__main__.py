from benchmarks.speed.run import main

raise SystemExit(main())
