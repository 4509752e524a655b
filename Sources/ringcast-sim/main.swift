import RingCastSimKit
SimCommand.main()
