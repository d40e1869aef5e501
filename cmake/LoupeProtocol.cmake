# loupe_protocol(NAME <name> SOURCES <file>... [DEPENDS <name>...] [TESTS <file>...] [FUZZER <file>])
#
# Adds one protocol of userspace/protocols/<name>/ to the build:
#   loupe_protocol_<name>  static library of SOURCES (pure code: no kernel, no I/O), linking
#                          loupe_warnings; includes userspace/ and bpf/ (loupe_abi.h) publicly.
#   loupe_<name>_tests     GoogleTest executable of TESTS, labelled `unit` (so the ASan+UBSan run
#                          of tools/test.sh runs it: add it to the targets built there).
#                          With LOUPE_BUILD_TESTS.
#   loupe_<name>_fuzz      libFuzzer target of FUZZER, compiled together with SOURCES so that the
#                          parser is instrumented too. With LOUPE_BUILD_FUZZERS (clang); run by
#                          `tools/fuzz.sh <name> [SECONDS]`.
# DEPENDS names other loupe_protocol() modules this one uses (e.g. `sql`, the statement
# summariser shared by the SQL protocols): linked, and compiled into the fuzzer too.
# Relative paths are taken from the calling directory.
include_guard(GLOBAL)

function(loupe_protocol)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;FUZZER" "SOURCES;TESTS;DEPENDS")
  if(NOT arg_NAME OR NOT arg_SOURCES)
    message(FATAL_ERROR "loupe_protocol: NAME and SOURCES are required")
  endif()
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "loupe_protocol(${arg_NAME}): unexpected arguments ${arg_UNPARSED_ARGUMENTS}")
  endif()
  set(sources "")
  foreach(f IN LISTS arg_SOURCES)
    get_filename_component(abs "${f}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    list(APPEND sources "${abs}")
  endforeach()
  set(includes ${PROJECT_SOURCE_DIR}/userspace ${PROJECT_SOURCE_DIR}/bpf)

  # Every protocol's sources, for fuzzers of the whole pipeline (tests/fuzz: records).
  set_property(GLOBAL APPEND PROPERTY LOUPE_PROTOCOL_SOURCES ${sources})
  set_property(GLOBAL PROPERTY LOUPE_PROTOCOL_${arg_NAME}_SOURCES ${sources})
  set(dependency_sources "")
  foreach(dep IN LISTS arg_DEPENDS)
    get_property(dep_sources GLOBAL PROPERTY LOUPE_PROTOCOL_${dep}_SOURCES)
    if(NOT dep_sources)
      message(FATAL_ERROR "loupe_protocol(${arg_NAME}): add_subdirectory ${dep} before it")
    endif()
    list(APPEND dependency_sources ${dep_sources})
  endforeach()

  set(lib loupe_protocol_${arg_NAME})
  add_library(${lib} STATIC ${sources})
  target_include_directories(${lib} PUBLIC ${includes})
  target_link_libraries(${lib} PRIVATE loupe_warnings)
  foreach(dep IN LISTS arg_DEPENDS)
    target_link_libraries(${lib} PUBLIC loupe_protocol_${dep})
  endforeach()

  if(LOUPE_BUILD_TESTS AND arg_TESTS)
    find_package(GTest REQUIRED)
    include(GoogleTest)
    set(tests "")
    foreach(f IN LISTS arg_TESTS)
      get_filename_component(abs "${f}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
      list(APPEND tests "${abs}")
    endforeach()
    add_executable(loupe_${arg_NAME}_tests ${tests})
    target_link_libraries(loupe_${arg_NAME}_tests PRIVATE ${lib} GTest::gtest_main loupe_warnings)
    gtest_discover_tests(loupe_${arg_NAME}_tests PROPERTIES LABELS unit DISCOVERY_TIMEOUT 60)
  endif()

  if(LOUPE_BUILD_FUZZERS AND arg_FUZZER)
    if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
      message(FATAL_ERROR "LOUPE_BUILD_FUZZERS needs clang++ as the C++ compiler (libFuzzer)")
    endif()
    get_filename_component(fuzzer "${arg_FUZZER}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    set(flags -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
    add_executable(loupe_${arg_NAME}_fuzz ${fuzzer} ${sources} ${dependency_sources})
    target_include_directories(loupe_${arg_NAME}_fuzz PRIVATE ${includes})
    target_compile_options(loupe_${arg_NAME}_fuzz PRIVATE ${flags})
    target_link_options(loupe_${arg_NAME}_fuzz PRIVATE ${flags})
    target_link_libraries(loupe_${arg_NAME}_fuzz PRIVATE loupe_warnings)
  endif()
endfunction()
