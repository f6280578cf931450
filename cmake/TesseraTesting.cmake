find_package(GTest CONFIG REQUIRED)
include(GoogleTest)

set(TESSERA_FIXTURES_DIR ${CMAKE_SOURCE_DIR}/tests/fixtures)

# tessera_add_test(NAME SOURCES... [LIBS ...] [LABELS ...])
# One gtest binary; every TEST() becomes a ctest case carrying LABELS.
function(tessera_add_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} tessera_test_support GTest::gtest_main GTest::gmock)
  # GCC 12 reports a false -Wrestrict inside std::string concatenation.
  target_compile_options(${name} PRIVATE $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
  set(labels ${ARG_LABELS})
  if(NOT labels)
    set(labels unit)
  endif()
  gtest_discover_tests(${name}
    PROPERTIES LABELS "${labels}" TIMEOUT 300
    DISCOVERY_TIMEOUT 60)
endfunction()
