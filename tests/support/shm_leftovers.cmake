# The suite's check that it leaves nothing in /dev/shm, kill tests included.
#
#   cmake -DMODE=record -DSTATE=<file> -P shm_leftovers.cmake   lists /dev/shm before the tests
#   cmake -DMODE=check  -DSTATE=<file> -P shm_leftovers.cmake   fails when entries appeared
#
# CTest runs `record` as the fixture setup and `check` as its cleanup, after every test that
# requires the fixture (every test of the suite). A tracker removes a killed owner's segments
# within milliseconds, so the check looks again for a few seconds before it fails.
if(NOT EXISTS /dev/shm)
  message(STATUS "no /dev/shm on this system: nothing to check")
  return()
endif()

file(GLOB now RELATIVE /dev/shm /dev/shm/*)
if(MODE STREQUAL "record")
  file(WRITE "${STATE}" "${now}")
  message(STATUS "/dev/shm holds ${now}")
  return()
endif()

if(NOT EXISTS "${STATE}")
  message(FATAL_ERROR "the /dev/shm listing from before the tests is missing: run the suite with "
                      "its fixtures (ctest without -FA/-FS/-FC options)")
endif()
file(READ "${STATE}" before)
foreach(attempt RANGE 50)
  file(GLOB now RELATIVE /dev/shm /dev/shm/*)
  set(left "${now}")
  if(before)
    list(REMOVE_ITEM left ${before})
  endif()
  if(NOT left)
    message(STATUS "nothing left in /dev/shm")
    return()
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} -E sleep 0.1)
endforeach()
message(FATAL_ERROR "the tests left these in /dev/shm: ${left}")
