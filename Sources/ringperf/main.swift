import RingPerfKit
RingPerfCommand.main()
