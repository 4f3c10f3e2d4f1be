# npm-ci.cmake - dts_npm_ci(DIR NPM): run `npm ci` in DIR when DIR/node_modules is missing or DIR/package-lock.json
# changed since the last successful install (its SHA-256 is kept in node_modules/.dattss-lock-sha256). Several build
# directories may configure at once (plain, sanitizer, fuzz builds): a file lock serialises them, and the second one
# finds the stamp up to date. Install scripts are not run (--ignore-scripts): esbuild finds its platform binary
# without its postinstall step, and nothing else needs one.
function(dts_npm_ci dir npm)
  set(lock ${dir}/package-lock.json)
  set(stamp ${dir}/node_modules/.dattss-lock-sha256)
  file(SHA256 ${lock} want)
  file(LOCK ${dir}/.npm-ci.lock GUARD FUNCTION TIMEOUT 900 RESULT_VARIABLE locked)
  if(NOT locked EQUAL 0)
    message(FATAL_ERROR "web/: cannot lock ${dir}/.npm-ci.lock: ${locked}")
  endif()
  set(have "")
  if(EXISTS ${stamp})
    file(READ ${stamp} have)
    string(STRIP "${have}" have)
  endif()
  if(have STREQUAL want AND EXISTS ${dir}/node_modules/esbuild/bin/esbuild)
    return()
  endif()
  message(STATUS "web/: npm ci (node_modules missing or package-lock.json changed)")
  execute_process(COMMAND ${npm} ci --ignore-scripts --no-audit --no-fund --loglevel=error
                  WORKING_DIRECTORY ${dir} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "web/: `npm ci` in ${dir} failed (${rc}); the dashboard cannot be built without uPlot and "
                        "esbuild. npm said:\n${out}")
  endif()
  file(WRITE ${stamp} "${want}\n")
endfunction()
