# -*- test-case-name: tests.test_packaging -*-
from twisted.application.service import ServiceMaker

wardled = ServiceMaker("wardled", "wardled.tap", "Wardle API server", "wardled")
