# Helpers shared by tandem's CMake files.

# tandem_set_warnings(target): the warning set every tandem target compiles with. Warnings are
# errors only in the presets (CMAKE_COMPILE_WARNING_AS_ERROR), never here.
function(tandem_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
      -Wold-style-cast -Wcast-align -Woverloaded-virtual -Wimplicit-fallthrough>)
endfunction()
