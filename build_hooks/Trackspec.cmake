# Trackspec.cmake: build the game's music with `trackspec build` as part of a CMake build.
#
#   include(path/to/Trackspec.cmake)
#   trackspec_add_music(TARGET music)                  # ROOT defaults to CMAKE_CURRENT_SOURCE_DIR
#   add_dependencies(mygame music)                     # the game target builds the music first
#
#   trackspec_add_music(TARGET <name>
#                       [ROOT <game repo root>]        # the folder with trackspec.toml
#                       [TRACKSPEC <command> [args...]] # default: the trackspec found on PATH
#                       [ARGS <build args>...])        # e.g. ARGS --model models/tiny
#
# The music target runs `trackspec build --root <ROOT>` only when a .trackspec file or
# trackspec.toml changed since its last successful run (an output stamp in the build folder),
# or when a spec was added or deleted (the spec list is globbed with CONFIGURE_DEPENDS and kept
# in a file that is rewritten only when the list changes). A failed build fails the target.
# Needs CMake 3.12+ (for CONFIGURE_DEPENDS).

function(trackspec_add_music)
  cmake_parse_arguments(PARSE_ARGV 0 TS "" "TARGET;ROOT" "TRACKSPEC;ARGS")
  if(NOT TS_TARGET)
    message(FATAL_ERROR "trackspec_add_music: TARGET <name> is required")
  endif()
  if(TS_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "trackspec_add_music: unknown arguments: ${TS_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT TS_ROOT)
    set(TS_ROOT "${CMAKE_CURRENT_SOURCE_DIR}")
  endif()
  get_filename_component(TS_ROOT "${TS_ROOT}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${TS_ROOT}/trackspec.toml")
    message(FATAL_ERROR "trackspec_add_music: ${TS_ROOT} has no trackspec.toml (run `trackspec init` there)")
  endif()
  if(NOT TS_TRACKSPEC)
    find_program(TRACKSPEC_EXECUTABLE trackspec)
    if(NOT TRACKSPEC_EXECUTABLE)
      message(FATAL_ERROR "trackspec_add_music: no trackspec on PATH; pip install trackspec, "
                          "or pass TRACKSPEC <command> (or -DTRACKSPEC_EXECUTABLE=/path/to/trackspec)")
    endif()
    set(TS_TRACKSPEC "${TRACKSPEC_EXECUTABLE}")
  endif()

  # Every spec under the root, hidden folders (.git, .trackspec) left out; re-globbed at build time.
  file(GLOB_RECURSE _specs CONFIGURE_DEPENDS RELATIVE "${TS_ROOT}" "${TS_ROOT}/*.trackspec")
  list(FILTER _specs EXCLUDE REGEX "(^|/)\\.")
  list(SORT _specs)
  set(_spec_paths "")
  foreach(_spec IN LISTS _specs)
    list(APPEND _spec_paths "${TS_ROOT}/${_spec}")
  endforeach()

  set(_dir "${CMAKE_CURRENT_BINARY_DIR}/trackspec-${TS_TARGET}")
  set(_list "${_dir}/specs.txt")
  string(REPLACE ";" "\n" _list_text "${_specs}")
  file(WRITE "${_list}.new" "${_list_text}\n")
  configure_file("${_list}.new" "${_list}" COPYONLY)  # touched only when the list changed
  set(_stamp "${_dir}/build.stamp")

  add_custom_command(
    OUTPUT "${_stamp}"
    COMMAND ${TS_TRACKSPEC} build --root "${TS_ROOT}" ${TS_ARGS}
    COMMAND "${CMAKE_COMMAND}" -E touch "${_stamp}"
    DEPENDS ${_spec_paths} "${TS_ROOT}/trackspec.toml" "${_list}"
    WORKING_DIRECTORY "${TS_ROOT}"
    COMMENT "trackspec: building the music in ${TS_ROOT}"
    VERBATIM
    USES_TERMINAL)
  add_custom_target(${TS_TARGET} DEPENDS "${_stamp}")
  set_property(TARGET ${TS_TARGET} PROPERTY TRACKSPEC_ROOT "${TS_ROOT}")
  set_property(TARGET ${TS_TARGET} PROPERTY TRACKSPEC_STAMP "${_stamp}")
endfunction()
